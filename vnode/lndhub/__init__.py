"""The LndHub API (BlueWallet, Zeus, Alby): its wire shapes, credentials and service."""
