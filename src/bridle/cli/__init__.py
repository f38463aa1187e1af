"""`bridle <command>`: parsing only; logic lives in the packages."""
