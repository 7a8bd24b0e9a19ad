//! EasyISP central: the operators server.
