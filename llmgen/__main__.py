from llmgen.cli import main

main()
