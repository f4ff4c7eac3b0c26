"""Memory model: predicted training memory per PEFT method for the user's model and setup."""
