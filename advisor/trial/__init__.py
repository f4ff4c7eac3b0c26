"""Quick trial: train the top candidates briefly on the user's own data, under the same budget."""
