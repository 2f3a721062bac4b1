"""DNS for the install domain: A/PTR for hosts and leases, SOA/NS, no open recursion."""
