"""Layer 6, studies: experiment specs, their runs and figures, the papers' claims (`verify`), the
mutation library and plugins. Imports the layers below."""
