//! EasyISP agent: runs next to one MikroTik router.
