"""Layer 5, learned policies: the transformer mode (model, sequence games, training) and EGPO's MLP
policy. Imports the layers below."""
