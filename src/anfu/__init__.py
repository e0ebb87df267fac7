"""anfu (安付): a self-hostable mobile e-commerce and third-party payment platform."""

__version__ = "0.1.0"
