"""Route policy: what a host announces (`export`) and what it accepts from peers (`importer`). Pure logic."""
