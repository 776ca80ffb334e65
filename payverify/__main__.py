from payverify.cli import main

main()
