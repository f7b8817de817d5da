from services.cleanup.server import main

main()
