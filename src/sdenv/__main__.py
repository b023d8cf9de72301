import sys

from sdenv.cli import main

sys.exit(main())
