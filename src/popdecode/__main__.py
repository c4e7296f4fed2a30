import sys

from popdecode.cli import main

sys.exit(main())
