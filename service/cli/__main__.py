"""`python -m service.cli`: the same as the `tcgen` command."""
import sys

from service.cli.commands import main

sys.exit(main())
