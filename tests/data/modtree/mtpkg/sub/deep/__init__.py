"""A package two levels down."""
