"""Fine-tuning of cellcounter's models from corrected labels (imports :mod:`cellcounter`, never :mod:`app`)."""
