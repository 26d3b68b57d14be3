"""`python -m experiments.gpu_bench`."""

import sys

from experiments.gpu_bench.main import main

sys.exit(main())
