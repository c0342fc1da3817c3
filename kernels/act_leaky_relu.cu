// Leaky ReLU (Maas, Hannun & Ng 2013): a = z for z >= 0, slope z below;
// da = 1 or slope. slope = gpuopt.nn.LEAKY_RELU_SLOPE (0.01), passed from the host.
// in:  T z, F slope
// out: T a, T da if DERIV
F x = (F)z;
a = (T)(x < 0 ? slope * x : x);
#if DERIV
da = (T)(x < 0 ? slope : (F)1);
#endif
