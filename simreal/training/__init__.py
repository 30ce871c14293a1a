"""Training: the stage engine (`engine`) and the transfer methods that are its plugins (`methods`)."""
