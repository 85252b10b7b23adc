//! Helm release storage (Secret and ConfigMap drivers) decoded into deploys.
