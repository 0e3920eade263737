from session_service.cli import main

raise SystemExit(main())
