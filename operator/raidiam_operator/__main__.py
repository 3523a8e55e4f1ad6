import sys

from raidiam_operator.cli import main

sys.exit(main())
