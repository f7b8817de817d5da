from services.validator.server import main

main()
