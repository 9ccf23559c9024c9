"""Tests of gestor.platforms: clients and simulator over real loopback HTTP."""
