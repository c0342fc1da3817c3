// Logistic sigmoid: a = 1 / (1 + exp(-z)),  da = a (1 - a) = sigmoid(z) sigmoid(-z).
// Stable for any z: e = exp(-|z|) never overflows, and s = sigmoid(-|z|) = e / (1 + e)
// (the smaller of sigmoid(z), sigmoid(-z)) carries full relative precision, so both a
// and da are accurate also in the tails (da = s (1 - s) does not cancel to 0).
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F x = (F)z;
F e = exp(-fabs(x));
F s = e / (one + e);
a = (T)(x < 0 ? s : one - s);
#if DERIV
da = (T)(s * (one - s));
#endif
