from nasbench_repro.cli import main

raise SystemExit(main())
