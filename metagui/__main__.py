from metagui.cli import main

raise SystemExit(main())
