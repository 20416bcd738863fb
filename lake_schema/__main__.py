import sys

from lake_schema.cli import main

sys.exit(main())
