"""payverify: decides server-side whether SumUp hosted checkouts were paid, and settles orders."""

__version__ = "0.1.0"
