import sys

from serstream.cli import main

sys.exit(main())
