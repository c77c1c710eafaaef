import sys

from reasoning_pipeline.cli import main

sys.exit(main())
