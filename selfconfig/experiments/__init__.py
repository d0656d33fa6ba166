"""The paper's protocol in one command: every strategy x label fraction x fold, scored on the
held-out test set and on the validation fold, summarised in a table and a figure."""
