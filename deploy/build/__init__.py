"""The bundle builder (`make deploy`, `python -m deploy.build`): the verified export turned into a
torch-free folder with its manifest, model card, Triton repository and KServe manifest."""
