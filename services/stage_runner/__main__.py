from services.stage_runner.server import main

main()
