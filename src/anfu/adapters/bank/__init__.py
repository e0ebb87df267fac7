from anfu.adapters.bank.base import (
    BankAdapter,
    BankDeclined,
    BankReply,
    BankReplyMismatch,
    BankUnavailable,
)
from anfu.adapters.bank.sandbox import SandboxBank

__all__ = ["BankAdapter", "BankDeclined", "BankReply", "BankReplyMismatch", "BankUnavailable",
           "SandboxBank"]
