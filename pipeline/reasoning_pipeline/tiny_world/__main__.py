import sys

from reasoning_pipeline.tiny_world.build import main

sys.exit(main())
