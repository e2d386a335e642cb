"""Lightning Addresses and LNURL-pay (LUD-06, LUD-12, LUD-16, LUD-21): names users claim, the
payRequest and callback served for them, and the verify URL of each invoice (docs/LNURL.md)."""
