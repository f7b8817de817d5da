from services.progress.server import main

main()
