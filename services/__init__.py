"""Services of the vidsynth mesh, one package each."""
