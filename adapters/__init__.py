"""One module per vendor behind one interface (`adapters.base.Adapter`). Only `registry` knows names."""
