"""What requests cost: prices, token usage by kind, the ledger, savings references and budgets."""
