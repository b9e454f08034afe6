from harmonyspeech.cli import main

raise SystemExit(main())
