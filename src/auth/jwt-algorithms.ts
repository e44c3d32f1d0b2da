/** Algorithms the allow-list (APMATRIX_JWT_ALGORITHMS) may name: asymmetric signatures only (never `none`, never a shared secret). */
export const JWT_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const
