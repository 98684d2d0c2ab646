"""One module per benchmark stage; each `run(stack, plan)` returns its StageResult."""
