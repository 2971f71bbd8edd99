"""Every write to accounts data goes through these functions; REST, GraphQL and the admin only call them."""
