"""The escrow ("guaranteed") trade of book ch. 7: pay into escrow, ship, confirm, settle."""
