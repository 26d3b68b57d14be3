"""`python -m vit_jax.benchmark`: see vit_jax/benchmark/__init__.py."""

import sys

from vit_jax.benchmark.cli import main

sys.exit(main())
