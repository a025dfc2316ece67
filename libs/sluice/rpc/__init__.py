"""gRPC plumbing shared by every service: errors, call context, servers, clients."""
