"""Mediation agreements (人民调解协议书): drafting, signing, locking into a hash-chained ledger,
public verification, the PDF and the follow-up of each term (履行与回访)."""
