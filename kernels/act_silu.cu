// SiLU / swish (Elfwing, Uchibe & Doya 2018; Ramachandran et al. 2017):
//   a = z sigmoid(z),  da = sigmoid(z) (1 + z sigmoid(-z)).
// Both sigmoids come from s = sigmoid(-|z|) = e / (1 + e), e = exp(-|z|), as in
// act_sigmoid.cu: no overflow, and no inf * 0 for huge |z|.
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F x = (F)z;
F e = exp(-fabs(x));
F s = e / (one + e);
F sp = x < 0 ? s : one - s;
a = (T)(x * sp);
#if DERIV
F sn = x < 0 ? one - s : s;
da = (T)(sp * (one + x * sn));
#endif
