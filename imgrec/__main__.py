import sys

from imgrec.cli.main import main

sys.exit(main())
