//! Bearer token → [`UnverifiedJwt`] (stub: to be implemented).
