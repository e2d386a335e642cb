"""Lightning payments: sending (reserve -> pay -> settle), receiving, reconciling."""
